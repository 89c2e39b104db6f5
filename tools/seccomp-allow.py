"""Print a seccomp profile (JSON) with more syscalls allowed unconditionally.

    python3 tools/seccomp-allow.py PROFILE SYSCALL... > OUT

PROFILE is Docker's default profile (profiles/seccomp/default.json of the
github.com/docker/docker Go module); each SYSCALL joins its unconditional
allow rule (SCMP_ACT_ALLOW with no args, includes or excludes), in the order
given, unless it is already there. The output is deterministic: the same
inputs give the same bytes.
"""

import json
import sys

USAGE = "usage: python3 tools/seccomp-allow.py PROFILE SYSCALL... > OUT"


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(USAGE, file=sys.stderr)
        return 2
    path, names = argv[1], argv[2:]
    with open(path, encoding="utf-8") as f:
        profile = json.load(f)
    rules = [
        rule
        for rule in profile.get("syscalls", [])
        if rule.get("action") == "SCMP_ACT_ALLOW"
        and not rule.get("args")
        and not rule.get("includes")
        and not rule.get("excludes")
    ]
    if len(rules) != 1:
        found = len(rules)
        print(f"{path}: not one unconditional SCMP_ACT_ALLOW rule but {found}", file=sys.stderr)
        return 1
    allowed = rules[0]["names"]
    allowed.extend(name for name in names if name not in allowed)
    json.dump(profile, sys.stdout, indent="\t")
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
