# The backup's login (`snapshot`, playbooks/backup.yml): it takes raft
# snapshots and nothing else. A snapshot is sealed with OpenBao's own keys;
# restoring one needs the admin's sudo on sys/storage/raft/snapshot-force.
path "sys/storage/raft/snapshot" {
  capabilities = ["read"]
}
