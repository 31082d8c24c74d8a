#!/bin/sh
# kata-ts, the operator's command: make writes it into a runtime folder's bin/
# (build/bin, or /opt/kata-ts/bin by `make install`) with NODE and KATA_TS_JS filled in.
unset NODE_EXTRA_CA_CERTS # it makes no TLS connections; parsing them costs every start
exec '@NODE@' '@KATA_TS_JS@' "$@"
