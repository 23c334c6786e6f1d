"""`rtfuse keys`: CURVE key pairs for publishing beyond loopback."""

from __future__ import annotations

import argparse

HELP = "create CURVE keys (server pair + a client pair) for encrypted, authenticated publishing"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", metavar="DIR",
                        help="key folder (created); give it to `run --keys` and `subscribe --keys`")
    parser.add_argument("--name", default="client",
                        help="client key name; run again with another name to add a subscriber")


def run(args: argparse.Namespace) -> int:
    from rtfuse.paths import check_output
    from rtfuse.publish import generate_keys

    check_output(args.directory, folder=True)
    public, secret = generate_keys(args.directory, args.name)
    print(f"publisher: {args.directory}/server.key_secret (keep on the publishing host)")
    print(f"subscriber {args.name}: {secret} + {args.directory}/server.key (copy both to the subscribing host)")
    print(f"accepted subscribers: every *.key in {args.directory} (this one: {public})")
    return 0
