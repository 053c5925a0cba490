{{/* Names, labels and the tokenlabs config shared by every template. */}}

{{- define "tokenlabs.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tokenlabs.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else if contains (include "tokenlabs.name" .) .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "tokenlabs.name" .) | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "tokenlabs.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "tokenlabs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: tokenlabs
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Labels of one component's objects (authz, extproc, epp, envoy, redis): call with (list $ "authz"). */}}
{{- define "tokenlabs.componentLabels" -}}
{{ include "tokenlabs.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Selector labels of one component: call with (list $ "authz"). */}}
{{- define "tokenlabs.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "tokenlabs.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "tokenlabs.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The in-cluster DNS name of a plugin server's (headless) Service: call with (list $ "authz"). */}}
{{- define "tokenlabs.serverHost" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s.%s.svc.%s" (include "tokenlabs.fullname" $root) (index . 1) $root.Release.Namespace $root.Values.clusterDomain -}}
{{- end -}}

{{/* Where the chart's Redis listens, when redis.enabled. */}}
{{- define "tokenlabs.redisUrl" -}}
{{- printf "redis://%s-redis.%s.svc.%s:6379/0" (include "tokenlabs.fullname" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{/*
The tokenlabs.yaml the servers read: .Values.config plus the keys the chart owns (see values.yaml). Templates that
need a port or a pool read it back with (include "tokenlabs.config" . | fromYaml), so every port has one source.
*/}}
{{- define "tokenlabs.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- $tenants := get $config "tenants" | default dict -}}
{{- $_ := set $tenants "source" "kubernetes" -}}
{{- if not (get $tenants "namespace") -}}
{{- $_ := set $tenants "namespace" .Release.Namespace -}}
{{- end -}}
{{- $_ := set $config "tenants" $tenants -}}
{{- $defaultPorts := dict "authz" (list 9001 9091) "extproc" (list 9002 9092) "epp" (list 9003 9093) -}}
{{- range $server, $ports := $defaultPorts -}}
{{- $section := get $config $server | default dict -}}
{{- $_ := set $section "host" "0.0.0.0" -}}
{{- $_ := set $section "grpc_port" (get $section "grpc_port" | default (index $ports 0) | int) -}}
{{- $_ := set $section "metrics_port" (get $section "metrics_port" | default (index $ports 1) | int) -}}
{{- $_ := set $config $server $section -}}
{{- end -}}
{{- $gateway := get $config "gateway" | default dict -}}
{{- $_ := set $gateway "host" "0.0.0.0" -}}
{{- $_ := set $gateway "port" (get $gateway "port" | default 8080 | int) -}}
{{- $_ := set $gateway "admin_port" (get $gateway "admin_port" | default 9901 | int) -}}
{{- $_ := set $config "gateway" $gateway -}}
{{- range $name, $pool := (get $config "pools" | default dict) -}}
{{- if and (kindIs "map" $pool) (get $pool "selector") (not (get $pool "namespace")) -}}
{{- $_ := set $pool "namespace" $.Release.Namespace -}}
{{- end -}}
{{- end -}}
{{- if .Values.redis.enabled -}}
{{- $_ := set $config "quota_store" (include "tokenlabs.redisUrl" .) -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/* The served model names of a pool, in config order: call with (list $config "llama"). */}}
{{- define "tokenlabs.poolModels" -}}
{{- $config := index . 0 -}}
{{- $pool := index . 1 -}}
{{- $names := list -}}
{{- range $model, $settings := $config.models -}}
{{- if eq (toString $settings.pool) $pool -}}
{{- $names = append $names $model -}}
{{- end -}}
{{- end -}}
{{- $names | join "," -}}
{{- end -}}

{{/* A pod template annotation that changes with the config, so a new config rolls the pods. */}}
{{- define "tokenlabs.configChecksum" -}}
checksum/config: {{ include "tokenlabs.config" . | sha256sum }}
{{- end -}}

{{/* Scheduling keys of a component's values (nodeSelector, tolerations, affinity), at pod spec level. */}}
{{- define "tokenlabs.placement" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* A PodDisruptionBudget for one component: call with (list $ "authz" $budgetValues). */}}
{{- define "tokenlabs.podDisruptionBudget" -}}
{{- $root := index . 0 -}}
{{- $budget := index . 2 -}}
{{- if $budget.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "tokenlabs.fullname" $root }}-{{ index . 1 }}
  labels:
    {{- include "tokenlabs.labels" $root | nindent 4 }}
spec:
  {{- /* minAvailable wins: values merge, so the default maxUnavailable is still there when you set it. */}}
  {{- if kindIs "invalid" $budget.minAvailable }}
  maxUnavailable: {{ $budget.maxUnavailable }}
  {{- else }}
  minAvailable: {{ $budget.minAvailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "tokenlabs.selectorLabels" (list $root (index . 1)) | nindent 6 }}
{{- end }}
{{- end -}}
