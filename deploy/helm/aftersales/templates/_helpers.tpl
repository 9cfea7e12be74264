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
