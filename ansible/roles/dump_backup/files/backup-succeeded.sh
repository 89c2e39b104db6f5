#!/bin/sh
# labstack-backup-succeeded DIR NAME MAX_AGE_SECONDS
# Records in the node exporter's textfile directory DIR that backup NAME has
# just succeeded, and how old its last success may grow before Prometheus's
# BackupStale alert fires. Written whole, then renamed: the exporter never
# reads half a file.
set -eu
dir=$1 name=$2 max_age=$3
tmp=$(mktemp "$dir/.backup-$name.XXXXXX")
trap 'rm -f "$tmp"' EXIT
cat > "$tmp" <<METRICS
# HELP labstack_backup_last_success_timestamp_seconds When the backup last succeeded.
# TYPE labstack_backup_last_success_timestamp_seconds gauge
labstack_backup_last_success_timestamp_seconds{backup="$name"} $(date +%s)
# HELP labstack_backup_max_age_seconds Age of the last success beyond which the backup is stale.
# TYPE labstack_backup_max_age_seconds gauge
labstack_backup_max_age_seconds{backup="$name"} $max_age
METRICS
chmod 0644 "$tmp"
mv "$tmp" "$dir/backup-$name.prom"
trap - EXIT
