"""labstack's training workload: the code that runs inside every job."""
