#!/bin/sh
# Writes the running Alertmanager configuration from the template (alertmanager.yml) and the
# compose stack's settings (docker-compose.yml's alertmanager service runs it before starting):
#   SMTP_SMARTHOST    host:port of the SMTP relay (the notifier's AFTERSALES_SMTP_HOST:PORT)
#   SMTP_USERNAME     its login (AFTERSALES_SMTP_USERNAME; empty: no authentication)
#   SMTP_PASSWORD     its password (AFTERSALES_SMTP_PASSWORD)
#   SMTP_REQUIRE_TLS  true to require STARTTLS (AFTERSALES_SMTP_STARTTLS)
#   WEBHOOK_URL       where the on-call pages are posted (ALERTMANAGER_WEBHOOK_URL)
# An unset or empty variable keeps the template's value. Values are written as YAML single-quoted
# strings, so a password with quotes, colons, '#' or backslashes arrives as it is.
# Usage: render.sh TEMPLATE OUTPUT   (tests/integration/test_deploy_alertmanager.py runs it)
set -eu
awk -v q="'" '
function quoted(s) { gsub(q, q q, s); return q s q }
{ line = $0 }
/^  smtp_smarthost: /     && ENVIRON["SMTP_SMARTHOST"] != "" { line = "  smtp_smarthost: " quoted(ENVIRON["SMTP_SMARTHOST"]) }
/^  smtp_auth_username: / && ENVIRON["SMTP_USERNAME"] != ""  { line = "  smtp_auth_username: " quoted(ENVIRON["SMTP_USERNAME"]) }
/^  smtp_auth_password: / && ENVIRON["SMTP_PASSWORD"] != ""  { line = "  smtp_auth_password: " quoted(ENVIRON["SMTP_PASSWORD"]) }
/^  smtp_require_tls: /   && ENVIRON["SMTP_REQUIRE_TLS"] != "" {
  tls = tolower(ENVIRON["SMTP_REQUIRE_TLS"])
  line = "  smtp_require_tls: " ((tls == "true" || tls == "1" || tls == "yes") ? "true" : "false")
}
/^      - url: http:\/\/sms-sink:8025\/v1\/alerts$/ && ENVIRON["WEBHOOK_URL"] != "" {
  line = "      - url: " quoted(ENVIRON["WEBHOOK_URL"])
}
{ print line }
' "$1" > "$2"
