#!/usr/bin/env bash
# Builds the training image from a wheelhouse (`make wheelhouse`):
#   images/training/build.sh WHEELHOUSE PORT [docker build options...]
# The build context is a tar stream of the Dockerfile, requirements.txt, the
# pip wheel and project/; the locked wheels (3.3 GB) are not copied into any
# layer but served to the build on 127.0.0.1:PORT (the build runs with
# --network host) for as long as it runs, and pip checks their hashes.
set -euo pipefail
wheelhouse=$(realpath "$1") port=$2
shift 2
python3 -m http.server --bind 127.0.0.1 --directory "$wheelhouse" "$port" >/dev/null 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
until python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/requirements.txt')" 2>/dev/null; do
    if ! kill -0 "$server" 2>/dev/null; then
        echo "images/training/build.sh: cannot serve $wheelhouse on 127.0.0.1:$port (is the port taken? set TRAINING_WHEELHOUSE_PORT)" >&2
        exit 1
    fi
    sleep 0.2
done
pip_wheel=$(cd "$wheelhouse" && echo pip-*.whl)
tar -c --owner=0 --group=0 -C "$(dirname "$(realpath "$0")")" Dockerfile \
        -C "$wheelhouse" requirements.txt "$pip_wheel" project \
    | docker build --network host --build-arg WHEELHOUSE_PORT="$port" "$@" -
