# muninn-bouncer: a static binary on distroless.
#
# The bouncer programs the host's nftables, so run it in the host network namespace
# with CAP_NET_ADMIN only:
#   docker run -d --name muninn-bouncer --network host --cap-add NET_ADMIN \
#     -e MUNINN_BOUNCER_SERVER=https://muninn.example:8080 \
#     -e MUNINN_BOUNCER_KEY_FILE=/run/secrets/bouncer_key \
#     -v muninn-bouncer:/var/lib/muninn-bouncer muninn-bouncer
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
ENTRYPOINT ["/usr/local/bin/muninn-bouncer"]
