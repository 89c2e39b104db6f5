"""`labstack`: submit training runs and sweeps to Slurm, Kubernetes, Apptainer or this machine.

Every submission creates its MLflow run first (provenance tags, the full
configuration), then hands the job only the run id and non-secret settings;
the job fetches its credentials from OpenBao at start with a secret id the
launcher leaves in a file private to the job's user.
"""
