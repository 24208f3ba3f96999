# latchkey: MCP behind a key. Build: docker build -t latchkey .
# Two stages: a Rust toolchain builds a stripped release binary; Debian slim runs it.

FROM rust:1-slim-trixie AS build
WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when Cargo.toml or Cargo.lock
# change, not on every source edit.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

COPY src ./src
# COPY keeps the files' old times: touch them, or cargo keeps the empty placeholder build.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && install -D -m 0755 target/release/latchkey /out/latchkey


FROM debian:trixie-slim

LABEL org.opencontainers.image.title="latchkey" \
      org.opencontainers.image.description="Reach your own tools from ChatGPT, Claude and any remote MCP client, behind a key." \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.source="https://github.com/latchkey/latchkey"

# CA certificates: for OTLP export to a hosted backend over HTTPS (ACME brings its own roots).
# Not pinned: the version is whatever Debian's security updates ship.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
    && groupadd --system --gid 10001 latchkey \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/latchkey \
       --shell /usr/sbin/nologin latchkey \
    # The socket directory: group www-data (33, Apache's workers) and setgid, so the socket
    # latchkey makes there belongs to that group; mode 2770 keeps everyone else out. A new
    # named volume mounted here starts with this owner and mode.
    && install -d -m 2770 -o 10001 -g 33 /run/latchkey \
    && install -d -m 0700 -o 10001 -g 10001 /var/lib/latchkey

COPY --from=build /out/latchkey /usr/local/bin/latchkey

# The Unix socket Apache connects to, and the state (generated key, ACME cache).
VOLUME ["/run/latchkey", "/var/lib/latchkey"]

ENV LATCHKEY_LISTEN=unix:/run/latchkey/mcp.sock \
    LATCHKEY_STATE_DIR=/var/lib/latchkey \
    LATCHKEY_LOG_FORMAT=json

USER 10001:10001

HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/latchkey", "healthcheck"]

ENTRYPOINT ["/usr/local/bin/latchkey"]
CMD ["serve"]
