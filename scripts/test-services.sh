#!/usr/bin/env bash
# Tools the tests need beyond the Python package, each installed only when missing.
# Every step is idempotent and says what it installs.
set -euo pipefail
cd "$(dirname "$0")/.."

# Headless Chromium for the QA report's browser test (tests/live/test_report_browser.py).
if [ ! -x /usr/bin/chromium ]; then
    echo "test-services: installing chromium (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium
fi

# Label Studio 1.23.2 for the live review-tool tests (tests/live/test_labelstudio_live.py), in its own
# virtualenv: its pins (Django, numpy, ...) clash with ours. The tests start it (session fixture).
LS_VERSION=1.23.2
if ! .venv-labelstudio/bin/python -c "import label_studio, sys; sys.exit(label_studio.__version__ != '$LS_VERSION')" 2>/dev/null; then
    echo "test-services: installing label-studio==$LS_VERSION into .venv-labelstudio"
    python3 -m venv .venv-labelstudio
    .venv-labelstudio/bin/pip install -q "label-studio==$LS_VERSION"
fi

# Ultralytics, so tests/integration/test_ultralytics.py checks our YOLO releases with Ultralytics' own dataset
# loader. --no-deps: ultralytics requires opencv-python, whose cv2/ would overwrite the cv2/ of the
# opencv-python-headless 4.12 that label-studio-sdk pins (both wheels ship the same package); what its
# data loader imports (numpy, torch, torchvision, PIL, yaml, matplotlib, scipy, psutil, requests) is
# already installed, and `import cv2` stays the headless 4.12 build.
ULTRALYTICS_VERSION=8.4.190
if ! .venv/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('ultralytics') != '$ULTRALYTICS_VERSION')" 2>/dev/null; then
    echo "test-services: installing ultralytics==$ULTRALYTICS_VERSION (--no-deps) into .venv"
    .venv/bin/pip install -q --no-deps "ultralytics==$ULTRALYTICS_VERSION"
fi
.venv/bin/python - <<'PY'
import importlib.metadata as m

import cv2

try:
    m.version("opencv-python")
except m.PackageNotFoundError:
    pass
else:
    raise SystemExit("test-services: opencv-python is installed; its cv2 replaces opencv-python-headless's")
assert cv2.__version__.startswith("4.12") and hasattr(cv2, "CascadeClassifier"), cv2.__version__
PY

# Redis on 127.0.0.1:6379: the Celery broker and result backend of tests/live/test_celery.py.
if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
    if ! command -v redis-server >/dev/null; then
        echo "test-services: installing redis-server (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq redis-server
    fi
    echo "test-services: starting redis-server on 127.0.0.1:6379"
    redis-server --bind 127.0.0.1 --port 6379 --daemonize yes
fi

# datumaro and supervision, the readers tests/integration/test_release_readers.py loads our
# releases with, in a virtualenv of their own: datumaro 1.13 pins older pillow, pyarrow and pandas
# than labelloop's, supervision needs opencv-python (whose cv2 would replace the headless one in
# .venv). The tests run tests/support/release_readers.py with this interpreter.
DATUMARO_VERSION=1.13.12
SUPERVISION_VERSION=0.31.2
if ! .venv-readers/bin/python -c "import importlib.metadata as m, sys; sys.exit((m.version('datumaro'), m.version('supervision')) != ('$DATUMARO_VERSION', '$SUPERVISION_VERSION'))" 2>/dev/null; then
    echo "test-services: installing datumaro==$DATUMARO_VERSION supervision==$SUPERVISION_VERSION into .venv-readers"
    python3 -m venv .venv-readers
    .venv-readers/bin/pip install -q "datumaro==$DATUMARO_VERSION" "supervision==$SUPERVISION_VERSION" "pycocotools>=2.0.8"
fi
