#!/bin/sh
# Compose's postgres-tls job (docker-compose.yml), in the postgres image as root: a private CA and
# a server certificate for the host name `postgres`, generated once into the postgres-tls volume
# (server.crt, server.key owned by the postgres user, as the server requires; ca.key stays there),
# and the CA certificate copied to the postgres-ca volume, the only part the services mount.
# The services connect with sslmode=verify-full against that CA (AFTERSALES_DATABASE_SSL_ROOTCERT).
set -eu
tls=/tls
ca=/ca
host="${POSTGRES_TLS_HOST:-postgres}"
if [ ! -s "$tls/server.crt" ] || [ ! -s "$tls/server.key" ] || [ ! -s "$tls/ca.pem" ]; then
  umask 077
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days 825 \
    -subj "/CN=Aftersales Postgres CA" -keyout "$tls/ca.key" -out "$tls/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -subj "/CN=$host" \
    -keyout "$tls/server.key" -out "$tls/server.csr"
  printf 'subjectAltName=DNS:%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' \
    "$host" > "$tls/server.ext"
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial -days 825 \
    -extfile "$tls/server.ext" -out "$tls/server.crt"
  rm -f "$tls/server.csr" "$tls/server.ext" "$tls/ca.srl"
  echo "postgres-tls: CA and server certificate for $host generated"
fi
chown postgres:postgres "$tls/server.key" "$tls/server.crt"
chmod 600 "$tls/server.key"
chmod 644 "$tls/server.crt" "$tls/ca.pem"
cp "$tls/ca.pem" "$ca/ca.pem"
chmod 755 "$ca"
chmod 644 "$ca/ca.pem"
