{{/* The release's full name, at most 63 characters. */}}
{{- define "periscope.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "periscope.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "periscope.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Labels that select the agent's pods. */}}
{{- define "periscope.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The agent pods' label selector as a string, for the agents to find each other. */}}
{{- define "periscope.selectorString" -}}
app.kubernetes.io/name={{ .Chart.Name }},app.kubernetes.io/instance={{ .Release.Name }}
{{- end -}}

{{/* The Secret holding the agents' linking token. */}}
{{- define "periscope.linkingSecret" -}}
{{- default (printf "%s-linking" (include "periscope.fullname" .)) .Values.linking.tokenSecret -}}
{{- end -}}

{{- define "periscope.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "periscope.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The agent's configuration file: the chart's settings, then .Values.config over them. */}}
{{- define "periscope.config" -}}
{{- $base := dict
  "console" "off"
  "metrics_addr" (printf "0.0.0.0:%d" (int .Values.metrics.port))
  "log_format" .Values.logFormat
  "log_level" .Values.logLevel
  "kubernetes" (dict "enabled" (toString .Values.kubernetes.enabled))
  "metrics" (dict "route_patterns" .Values.metrics.routePatterns)
-}}
{{- if .Values.linking.enabled -}}
{{- $_ := set $base "linking" (dict
  "listen" (printf "0.0.0.0:%d" (int .Values.linking.port))
  "token_file" "/etc/periscope-linking/token"
  "wait" .Values.linking.wait
  "peer_selector" (include "periscope.selectorString" .)
) -}}
{{- end -}}
{{- toYaml (mustMergeOverwrite $base (deepCopy .Values.config)) -}}
{{- end -}}
