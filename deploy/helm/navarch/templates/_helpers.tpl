{{/* Names: with the release called navarch, the seed's names (navarch-control-plane, navarch-node-agent). */}}
{{- define "navarch.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "navarch.controlPlane" -}}{{ include "navarch.fullname" . }}-control-plane{{- end -}}
{{- define "navarch.agent" -}}{{ include "navarch.fullname" . }}-node-agent{{- end -}}
{{- define "navarch.sqld" -}}{{ include "navarch.fullname" . }}-sqld{{- end -}}

{{- define "navarch.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component (args: root context, component name). */}}
{{- define "navarch.selector" -}}
app.kubernetes.io/name: {{ (index . 0).Chart.Name }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/*
The pool the DaemonSet's nodes register into: agent.pool, else the first pool of config.pools,
else none (the enroll token's pool, else the Node's navarch.dev/pool label, decides).
*/}}
{{- define "navarch.agentPool" -}}
{{- if .Values.agent.pool -}}
{{- .Values.agent.pool -}}
{{- else if .Values.config.pools -}}
{{- (index .Values.config.pools 0).name -}}
{{- end -}}
{{- end -}}

{{- define "navarch.poolsNamespace" -}}{{ .Values.kubernetes.poolsCrd.namespace | default .Release.Namespace }}{{- end -}}

{{- define "navarch.scheme" -}}{{ if .Values.tls.secretName }}https{{ else }}http{{ end }}{{- end -}}

{{/* The API's URL inside the cluster: the Service's DNS name. */}}
{{- define "navarch.serviceUrl" -}}
{{ include "navarch.scheme" . }}://{{ include "navarch.controlPlane" . }}.{{ .Release.Namespace }}.svc:{{ .Values.controlPlane.port }}
{{- end -}}

{{/* The shared database's URL, or empty for the embedded file. */}}
{{- define "navarch.databaseUrl" -}}
{{- if .Values.sqld.enabled -}}
http://{{ include "navarch.sqld" . }}.{{ .Release.Namespace }}.svc:8080
{{- else -}}
{{ .Values.database.url }}
{{- end -}}
{{- end -}}

{{/* Two or more replicas on one embedded file would be two writers: refused here (and by the schema). */}}
{{- define "navarch.validate" -}}
{{- if and (gt (int .Values.controlPlane.replicas) 1) (not (include "navarch.databaseUrl" .)) -}}
{{- fail "controlPlane.replicas > 1 needs a shared libSQL server: set sqld.enabled=true or database.url (the embedded database is one file on one volume)" -}}
{{- end -}}
{{- if and .Values.controlPlane.persistence.existingClaim (include "navarch.databaseUrl" .) -}}
{{- fail "controlPlane.persistence.existingClaim holds the embedded database; with sqld.enabled or database.url there is none" -}}
{{- end -}}
{{- end -}}

{{- define "navarch.image" -}}
{{- $img := index . 0 -}}{{- $root := index . 1 -}}
{{ $img.repository }}:{{ $img.tag | default $root.Chart.AppVersion }}
{{- end -}}

{{/*
The reconciler's config file: the user's config with what the deployment decides set over it.
*/}}
{{- define "navarch.config" -}}
{{- $cfg := deepCopy (.Values.config | default dict) -}}
{{- $server := deepCopy (get $cfg "server" | default dict) -}}
{{- $_ := set $server "address" (printf "0.0.0.0:%d" (int .Values.controlPlane.port)) -}}
{{- $_ := set $server "data_dir" "/var/lib/navarch" -}}
{{- if not (hasKey $server "public_url") -}}
{{- $_ := set $server "public_url" (include "navarch.serviceUrl" .) -}}
{{- end -}}
{{- with include "navarch.databaseUrl" . -}}
{{- $_ := set $server "database_url" . -}}
{{- end -}}
{{- if .Values.tls.secretName -}}
{{- $_ := set $server "tls" (dict "cert_file" "/etc/navarch-tls/tls.crt" "key_file" "/etc/navarch-tls/tls.key") -}}
{{- $_ := set $server "require_tls" .Values.tls.require -}}
{{- end -}}
{{- $_ := unset $server "allow_plain_http" -}}
{{- if .Values.healthPolicy -}}
{{- $_ := set $server "health_policy_path" "/etc/navarch/health-policy.yaml" -}}
{{- end -}}
{{- $_ := set $cfg "server" $server -}}
{{- if .Values.kubernetes.enabled -}}
{{- $kube := deepCopy (get $cfg "kubernetes" | default dict) -}}
{{- $_ := set $kube "in_cluster" true -}}
{{- $_ := set $kube "pools_crd" (dict "enabled" .Values.kubernetes.poolsCrd.enabled "namespace" (include "navarch.poolsNamespace" .)) -}}
{{- $_ := set $cfg "kubernetes" $kube -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}
