# muninn serve: a static binary on distroless. Point it at PostgreSQL with
# MUNINN_DATABASE_URL (the embedded cluster needs PostgreSQL binaries, which this
# image deliberately does not ship; compose.yaml runs PostgreSQL beside it).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/muninn ./server/cmd/muninn

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/muninn /usr/local/bin/muninn
ENV MUNINN_LISTEN=0.0.0.0:8080 MUNINN_DATA_DIR=/var/lib/muninn
EXPOSE 8080
USER nonroot
ENTRYPOINT ["/usr/local/bin/muninn"]
CMD ["serve"]
