"""Scale-out on one machine: a 3-node NATS cluster, one then two of every service, and
a run in which one NATS node and one instance of each service are killed mid-load."""
