#!/bin/sh
# containerd-shim-kata-ts-v2 as containerd runs it: make writes it into a
# runtime folder's bin/ (build/bin, or /opt/kata-ts/bin by `make install`)
# with NODE and SHIM_JS filled in.
#
# For `start`, containerd takes everything the command prints (stdout and
# stderr share one pipe) as the shim's address, once the command has exited
# and the pipe reached EOF. The Node process started here prints the address
# once it listens and then lets go of the pipe; for a new sandbox it keeps
# running as the shim. `setsid -f` puts it in its own session and returns at
# once, so the substitution below ends at that EOF, not at the shim's exit.
# V8 is set for a process that mostly waits and copies bytes: lite mode and a
# small young generation save about 10 MB per sandbox (wasm off, or lite mode
# warns on stderr, which would garble the address).
set -u
NODE='@NODE@'
SHIM_JS='@SHIM_JS@'
# The shim makes no TLS connections. With extra CA certificates named, Node
# parses them at every start-up, before any of our code runs: 90 ms here.
unset NODE_EXTRA_CA_CERTS
bundle=$PWD # containerd runs us in the bundle; CRI also passes -bundle
previous=
for action; do # the action comes last
  case $previous in -bundle | --bundle) bundle=$action ;; esac
  case $action in -bundle=* | --bundle=*) bundle=${action#*=} ;; esac
  previous=$action
done
if [ "${action:-}" = start ]; then
  address=$(UV_THREADPOOL_SIZE=32 setsid -f "$NODE" --lite-mode --no-expose-wasm --max-semi-space-size=1 "$SHIM_JS" "$@")
  # Empty: the shim failed, and said why on stderr, which containerd reports.
  [ -n "$address" ] || exit 1
  printf '%s' "$address"
  exit 0
fi
# containerd runs `delete` after every task, on its critical path. When the
# shim has already removed the task and all `delete` would clean up, there is
# nothing to do: containerd ignores the answer for a task it already deleted,
# and an empty one decodes as a zero DeleteResponse. (Name kept in step with
# CLEANED_UP_FILE in shim/src/containerd/bundle-state.ts.)
if [ "${action:-}" = delete ] && [ -e "$bundle/kata-ts.cleaned-up" ]; then
  exit 0
fi
exec "$NODE" "$SHIM_JS" "$@"
