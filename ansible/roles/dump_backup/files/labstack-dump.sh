#!/bin/bash
# labstack-dump backup NAME KEEP DUMP
#   Runs the executable DUMP, which writes a dump to its standard output;
#   encrypts it on its way (AES-256-CBC, PBKDF2, the passphrase in
#   /etc/labstack/backup/passphrase) and uploads it to the backup bucket as
#   NAME/NAME-YYYYmmddTHHMMSSZ.enc; then deletes all but the newest KEEP
#   dumps of NAME there. The plain dump never reaches a disk.
# labstack-dump list NAME
#   Prints the dumps of NAME in the bucket, oldest first.
# labstack-dump fetch NAME OBJECT OUT
#   Downloads OBJECT (empty: the newest dump of NAME) from the bucket and
#   decrypts it to OUT (mode 0600); prints the object's name.
# The bucket's URL is in /etc/labstack/backup/target; the backup user's login
# in /etc/labstack/backup/s3.curlrc (0600), never on a command line.
set -euo pipefail
conf=/etc/labstack/backup
usage() {
    echo "usage: labstack-dump backup NAME KEEP DUMP | list NAME | fetch NAME OBJECT OUT" >&2
    exit 2
}
[ $# -eq 4 ] || { [ $# -eq 2 ] && [ "$1" = list ]; } || usage
action=$1 name=$2
case $name in *[!a-z0-9-]* | "") echo "labstack-dump: NAME '$name' is not [a-z0-9-]+" >&2; exit 2 ;; esac
# shellcheck source=/dev/null
. "$conf/target"  # BUCKET_URL
s3() { curl --config "$conf/s3.curlrc" --silent --show-error --fail "$@"; }
cipher=(-aes-256-cbc -pbkdf2 -iter 600000 -pass "file:$conf/passphrase")
# NAME's dumps, oldest first (their names sort by time). curl signs the query
# as written: its parameters sorted, each value URI-encoded.
dumps() {
    s3 "$BUCKET_URL?list-type=2&prefix=$name%2F" | { grep -o '<Key>[^<]*</Key>' || true; } \
        | sed -e 's/<Key>//' -e 's/<\/Key>//' | sort
}

case $action in
backup)
    keep=$3 dump=$4
    case $keep in *[!0-9]* | "" | 0) echo "labstack-dump: KEEP must be 1 or more, got '$keep'" >&2; exit 2 ;; esac
    work=$(mktemp -d /var/tmp/labstack-dump-XXXXXX)
    trap 'rm -rf "$work"' EXIT
    "$dump" | openssl enc "${cipher[@]}" -salt -out "$work/dump.enc"
    key="$name/$name-$(date -u +%Y%m%dT%H%M%SZ).enc"
    s3 --upload-file "$work/dump.enc" "$BUCKET_URL/$key"
    echo "labstack-dump: uploaded $key ($(stat -c %s "$work/dump.enc") bytes)"
    dumps | head -n -"$keep" | while read -r old; do
        s3 --request DELETE "$BUCKET_URL/$old"
        echo "labstack-dump: deleted $old (the newest $keep are kept)"
    done
    ;;
list)
    dumps
    ;;
fetch)
    object=${3:-$(dumps | tail -n 1)} out=$4
    [ -n "$object" ] || { echo "labstack-dump: no dump of $name in $BUCKET_URL" >&2; exit 1; }
    case $object in "$name"/*) ;; *) echo "labstack-dump: $object is not a dump of $name" >&2; exit 2 ;; esac
    umask 077
    s3 "$BUCKET_URL/$object" | openssl enc -d "${cipher[@]}" -out "$out" || {
        rm -f "$out"
        echo "labstack-dump: $object could not be fetched and decrypted" >&2
        exit 1
    }
    echo "$object"
    ;;
*) usage ;;
esac
