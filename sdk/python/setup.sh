#!/bin/sh
# Install the tool Weir builds Python plugins with: componentize-py, pinned.
# Safe to run again: does nothing when the pinned version is already there.
#
#   sdk/python/setup.sh            # uses python3 -m pip
#   PYTHON=python3.12 sdk/python/setup.sh
set -eu

VERSION=0.25.1
PYTHON=${PYTHON:-python3}

if command -v componentize-py >/dev/null 2>&1; then
    found=$(componentize-py --version 2>/dev/null | awk '{print $NF}')
    if [ "$found" = "$VERSION" ]; then
        echo "componentize-py $VERSION is installed"
        exit 0
    fi
    echo "componentize-py ${found:-(unknown version)} found; installing $VERSION"
fi

"$PYTHON" -m pip install "componentize-py==$VERSION"

if ! command -v componentize-py >/dev/null 2>&1; then
    echo "componentize-py was installed but is not on PATH; add pip's script directory" >&2
    echo "(for a user install: $("$PYTHON" -m site --user-base)/bin) to PATH" >&2
    exit 1
fi
found=$(componentize-py --version | awk '{print $NF}')
if [ "$found" != "$VERSION" ]; then
    echo "componentize-py on PATH reports $found, not $VERSION: another copy comes first on PATH" >&2
    exit 1
fi
echo "componentize-py $VERSION is installed"
