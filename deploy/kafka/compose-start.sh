#!/bin/bash
# Starts one broker of docker-compose.yml's cluster (issue 19), in place of the image's own start
# script (which expects JKS keystores for any SSL listener):
# - server.properties from the KAFKA_* variables, named as the image does it (KAFKA_FOO_BAR ->
#   foo.bar, `__` -> `_`, `___` -> `-`), plus the inter-broker SCRAM login of admin;
# - the storage formatted once (--ignore-formatted) with a SCRAM-SHA-512 user per KAFKA_PASSWORD_<NAME>
#   (the principals of shared/kafka/acls.py), so clients can log in from the cluster's first start;
# - the healthcheck's client settings (/tmp/admin.properties), then the broker.
# Passwords stay in files readable by the broker's user only (umask 077), never on a command line
# that `ps` shows after start (exec replaces this shell).
set -euo pipefail
umask 077
bin=${BROKER_BIN:-/opt/kafka/bin}
conf=${BROKER_CONF:-/tmp}/server.properties
: > "$conf"
for var in $(compgen -e); do
  case "$var" in
    KAFKA_PASSWORD_*|KAFKA_HEAP_OPTS|KAFKA_OPTS|KAFKA_JVM_PERFORMANCE_OPTS|KAFKA_LOG4J_OPTS|KAFKA_VERSION|KAFKA_HOME) continue ;;
    KAFKA_*) ;;
    *) continue ;;
  esac
  key=${var#KAFKA_}
  key=${key,,}
  key=${key//___/-}
  key=${key//__/@}
  key=${key//_/.}
  key=${key//@/_}
  printf '%s=%s\n' "$key" "${!var}" >> "$conf"
done
jaas="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"${KAFKA_PASSWORD_ADMIN:?}\";"
printf 'listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=%s\n' "$jaas" >> "$conf"

scram=()
for var in $(compgen -e); do
  case "$var" in
    KAFKA_PASSWORD_*)
      name=${var#KAFKA_PASSWORD_}
      scram+=(--add-scram "SCRAM-SHA-512=[name=${name,,},password=${!var}]") ;;
  esac
done
"$bin/kafka-storage.sh" format --ignore-formatted -t "${CLUSTER_ID:?}" -c "$conf" "${scram[@]}" > /dev/null

cat > "${BROKER_CONF:-/tmp}/admin.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=$jaas
ssl.truststore.type=PEM
ssl.truststore.location=${KAFKA_SSL_TRUSTSTORE_LOCATION:?}
EOF
exec "$bin/kafka-server-start.sh" "$conf"
