#!/bin/sh
# The Docker image's entrypoint: `docker run IMAGE train ...` means `muscale train ...`;
# anything else (`torchrun ...`, `python ...`, `bash`, `muscale ...`) runs as given.
# The list below is muscale's subcommands (muscale/cli/main.py; tests/test_docker.py checks it).
case "${1:-}" in
  pipeline|inspect|train|coord-check|sweep|fit|transfer|scaling|diagnose|export)
    exec muscale "$@" ;;
  "")
    exec muscale --help ;;
  *)
    exec "$@" ;;
esac
