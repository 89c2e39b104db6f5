# What a training job needs: its own credentials, read only.
path "secret/data/labstack/jobs/*" {
  capabilities = ["read"]
}
