# muninn-bouncer: a static binary on distroless.
#
# The bouncer programs the host's nftables, so run it in the host network namespace
# with CAP_NET_ADMIN only; the key is the host's root-only /etc/muninn/bouncer.key
# (README: Files and permissions), mounted read-only:
#   docker run -d --name muninn-bouncer --restart always --network host \
#     --cap-drop ALL --cap-add NET_ADMIN \
#     -e MUNINN_BOUNCER_SERVER=https://muninn.example:8443 \
#     -e MUNINN_BOUNCER_KEY_FILE=/run/secrets/bouncer_key \
#     -v /etc/muninn/bouncer.key:/run/secrets/bouncer_key:ro \
#     -v muninn-bouncer:/var/lib/muninn-bouncer muninn-bouncer
# (with a private CA add -e MUNINN_BOUNCER_CA_FILE=/etc/muninn/ca.pem
#  -v /etc/muninn/ca.pem:/etc/muninn/ca.pem:ro.)
# It runs as root inside the container: Docker gives a non-root user no effective
# capabilities, and root with only NET_ADMIN can read the root-owned 0600 key.
# Keep the state volume: it holds the last good renders, applied at start before any
# API call.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY bouncer ./bouncer
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
    -o /out/muninn-bouncer ./bouncer/cmd/muninn-bouncer

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/muninn-bouncer /usr/local/bin/muninn-bouncer
VOLUME ["/var/lib/muninn-bouncer"]
USER 0:0
ENTRYPOINT ["/usr/local/bin/muninn-bouncer"]
