#!/bin/sh
# pip as the image's build runs it. A pip configuration and a CA bundle passed as build secrets
#   --secret id=pip_conf,src=pip.conf --secret id=pip_cert,src=ca-bundle.crt
# (for a proxy that re-signs TLS, or a private index) are used when present; secrets are mounted
# for one RUN step only, so neither ends up in a layer of the image.
set -eu
if [ -s /run/secrets/pip_conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip_conf; fi
if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi
exec "$VIRTUAL_ENV/bin/pip" "$@"
