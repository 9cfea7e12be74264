{{/* The release-scoped name of a process's objects. */}}
{{- define "aftersales.name" -}}
{{- printf "%s-%s" .root.Release.Name .service | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "aftersales.labels" -}}
app.kubernetes.io/name: aftersales
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "aftersales.selector" -}}
app.kubernetes.io/name: aftersales
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .service }}
{{- end -}}

{{/* A process's settings: the defaults merged under its own overrides. */}}
{{- define "aftersales.settings" -}}
{{- $own := index .root.Values.services .service -}}
{{- toYaml (mergeOverwrite (deepCopy .root.Values.defaults) (omit $own "port" "topics" "documents")) -}}
{{- end -}}

{{/* One environment variable from the Secret. */}}
{{- define "aftersales.secretEnv" -}}
- name: {{ .name | default .key }}
  valueFrom:
    secretKeyRef:
      name: {{ .root.Values.secrets.existingSecret }}
      key: {{ .key }}
      optional: {{ .optional | default false }}
{{- end -}}

{{/* The secret keys each process receives (values.yaml, secrets:). */}}
{{- define "aftersales.secretKeys" -}}
{{- $keys := list "AFTERSALES_API_TOKENS" -}}
{{- if eq .service "intake" }}{{ $keys = append $keys "AFTERSALES_WEBHOOK_SECRETS" }}{{ end -}}
{{- if eq .service "console" }}{{ $keys = append $keys "AFTERSALES_CONSOLE_SIGNING_KEY" }}{{ end -}}
{{- if eq .service "notifier" }}{{ $keys = append $keys "AFTERSALES_SMS_API_KEY" }}{{ end -}}
{{- toJson $keys -}}
{{- end -}}

{{/* The ConfigMap holding the Kafka CA (ca.pem), or empty for the system CAs. */}}
{{- define "aftersales.kafkaCa" -}}
{{- if .Values.kafka.ca.existingConfigMap -}}
{{- .Values.kafka.ca.existingConfigMap -}}
{{- else if .Values.kafka.ca.pem -}}
{{- printf "%s-kafka-ca" .Release.Name -}}
{{- end -}}
{{- end -}}

{{/* Kafka as compose and `infra up` run it: SASL (SCRAM) over TLS, or refused without the development flag. */}}
{{- define "aftersales.kafkaChecks" -}}
{{- $k := .Values.kafka -}}
{{- if and (ne $k.securityProtocol "SASL_SSL") (not $k.developmentInsecure) -}}
{{- fail (printf "kafka.securityProtocol %s: the services reach Kafka over SASL_SSL only (each as its own SCRAM principal); kafka.developmentInsecure=true renders it for a loopback development broker" $k.securityProtocol) -}}
{{- end -}}
{{- if and (hasPrefix "SASL" $k.securityProtocol) (not (has $k.saslMechanism (list "SCRAM-SHA-512" "SCRAM-SHA-256"))) (not $k.developmentInsecure) -}}
{{- fail (printf "kafka.saslMechanism %s: SCRAM-SHA-512 (or SCRAM-SHA-256); PLAIN sends the password itself" $k.saslMechanism) -}}
{{- end -}}
{{- /* The retention's entries are topic=days (shared/settings.py parse_topic_retention also refuses
a repeated topic and more than 36500 days, when `infra topics` or a service loads it). */ -}}
{{- range $entry := splitList "," (replace "\n" "," (toString $k.topicRetentionDays)) -}}
{{- $e := trim $entry -}}
{{- if and $e (not (regexMatch `^(upstream\.(sales|dms|erp|crm|\*)|deadletter|aftersales\.(deadletter|intake|followup|complaints|quality|notifier))\s*=\s*(0*[1-9][0-9]*|(?i:forever)|-1)$` $e)) -}}
{{- fail (printf "kafka.topicRetentionDays: %q is no topic=days (a contract topic, upstream.* or deadletter; whole days from 1, or forever for no limit)" $e) -}}
{{- end -}}
{{- end -}}
{{- /* A chart-made Secret (trial clusters): no two processes may share a Kafka username. */ -}}
{{- if .Values.secrets.create -}}
{{- $seen := dict -}}
{{- range $process := keys .Values.services | sortAlpha -}}
{{- with get $.Values.secrets.values (printf "AFTERSALES_KAFKA_SASL_USERNAME_%s" (upper $process)) -}}
{{- if hasKey $seen . -}}
{{- fail (printf "secrets.values: %s and %s share the Kafka username %s; each process logs in as its own principal" (get $seen .) $process .) -}}
{{- end -}}
{{- $_ := set $seen . $process -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A process's own Kafka login: username and password from its own Secret keys (none with PLAINTEXT or SSL). */}}
{{- define "aftersales.kafkaLogin" -}}
{{- if hasPrefix "SASL" .root.Values.kafka.securityProtocol -}}
{{- $suffix := upper .service -}}
{{- include "aftersales.secretEnv" (dict "root" .root "key" (printf "AFTERSALES_KAFKA_SASL_USERNAME_%s" $suffix) "name" "AFTERSALES_KAFKA_SASL_USERNAME") }}
{{ include "aftersales.secretEnv" (dict "root" .root "key" (printf "AFTERSALES_KAFKA_SASL_PASSWORD_%s" $suffix) "name" "AFTERSALES_KAFKA_SASL_PASSWORD") }}
{{- end -}}
{{- end -}}
