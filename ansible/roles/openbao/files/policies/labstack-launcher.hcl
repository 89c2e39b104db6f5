# What `labstack submit` needs: a secret id of the jobs AppRole per
# job (it never reads the jobs' credentials itself), and to revoke it
# (after a lookup: the accessor must be the run's, whose tags jobs can edit).
path "auth/approle/role/jobs/role-id" {
  capabilities = ["read"]
}
path "auth/approle/role/jobs/secret-id" {
  capabilities = ["update"]
}
path "auth/approle/role/jobs/secret-id-accessor/lookup" {
  capabilities = ["update"]
}
path "auth/approle/role/jobs/secret-id-accessor/destroy" {
  capabilities = ["update"]
}
