"""The console: one page, one script, one stylesheet; served as files, no build step."""
