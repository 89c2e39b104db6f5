# What configuring the lab needs (this task, every run): the lab's
# policies, auth methods and their roles and users, the KV engine and
# the lab's secrets in it, the raft cluster's members. Not seal, audit devices, tokens, other
# policies or other secret paths. Whoever writes policies and roles can
# grant themselves more: this login is the lab's OpenBao admin, with a
# password only in the encrypted credentials file and 15-minute tokens.
path "sys/policies/acl/labstack-*" {
  capabilities = ["create", "read", "update"]
}
path "sys/mounts" {
  capabilities = ["read"]
}
path "sys/mounts/secret" {
  capabilities = ["create", "read", "update"]
}
path "sys/auth" {
  capabilities = ["read"]
}
path "sys/auth/*" {
  capabilities = ["create", "read", "update", "sudo"]
}
path "sys/audit" {
  capabilities = ["read", "sudo"]
}
path "auth/approle/role/*" {
  capabilities = ["create", "read", "update"]
}
path "auth/userpass/users/*" {
  capabilities = ["create", "read", "update"]
}
path "auth/kubernetes/config" {
  capabilities = ["create", "read", "update"]
}
path "auth/kubernetes/role/*" {
  capabilities = ["create", "read", "update"]
}
path "secret/data/labstack/*" {
  capabilities = ["create", "read", "update"]
}
# The raft cluster of the secrets hosts: its members, and the removal of a
# host taken out of the secrets group.
path "sys/storage/raft/configuration" {
  capabilities = ["read"]
}
path "sys/storage/raft/autopilot/state" {
  capabilities = ["read"]
}
path "sys/storage/raft/remove-peer" {
  capabilities = ["update"]
}
# The emergency root token (README): with the unseal keys too.
path "sys/generate-root-token/*" {
  capabilities = ["create", "read", "update", "delete"]
}
