{{/*
Checks across values that values.schema.json cannot express. Each failure names the key and what to do; the
servers check the rest of the config themselves at start (README "Configuration").
*/}}
{{- define "tokenlabs.validate" -}}
{{- $config := include "tokenlabs.config" . | fromYaml -}}
{{- $source := (.Values.config.tenants | default dict).source | default "kubernetes" -}}
{{- if ne $source "kubernetes" -}}
{{- fail (printf "config.tenants.source: %q is for local runs; in a cluster authz follows tenant Secrets (leave it unset)" $source) -}}
{{- end -}}
{{- $store := .Values.config.quota_store | default "memory://" -}}
{{- if and .Values.redis.enabled (not (hasPrefix "memory://" $store)) -}}
{{- fail (printf "redis.enabled and config.quota_store (%s) both name a quota store: set one of them" $store) -}}
{{- end -}}
{{- if hasPrefix "memory://" $config.quota_store -}}
{{- range $server := list "authz" "extproc" -}}
{{- if gt (int (index $.Values $server).replicas) 1 -}}
{{- fail (printf "%s.replicas: %d replicas with quota_store memory:// would each count alone (limits multiplied); set redis.enabled or config.quota_store to a redis:// URL" $server (int (index $.Values $server).replicas)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if not $config.models -}}
{{- fail "config.models: define at least one model" -}}
{{- end -}}
{{- range $model, $settings := $config.models -}}
{{- $pool := (kindIs "map" $settings) | ternary (get $settings "pool") "" -}}
{{- if not (hasKey ($config.pools | default dict) (toString $pool)) -}}
{{- fail (printf "config.models.%s.pool: %q is not a pool in config.pools" $model $pool) -}}
{{- end -}}
{{- end -}}
{{- if eq .Values.envoy.mode "gateway" -}}
{{- range $name, $pool := $config.pools -}}
{{- if not (get $pool "selector") -}}
{{- fail (printf "config.pools.%s: envoy.mode gateway routes to a pool through a Service over its pods; give the pool a selector and target_port instead of endpoints" $name) -}}
{{- end -}}
{{- if ne (get $pool "namespace") $.Release.Namespace -}}
{{- fail (printf "config.pools.%s: envoy.mode gateway needs the pool's pods in the release namespace %q (the HTTPRoute's backend Service selects them), not %q" $name $.Release.Namespace (get $pool "namespace")) -}}
{{- end -}}
{{- end -}}
{{- if not .Values.envoy.gateway.createGateway -}}
{{- $_ := required "envoy.gateway.parentRef.name: name the Gateway to attach to (or set envoy.gateway.createGateway)" .Values.envoy.gateway.parentRef.name -}}
{{- end -}}
{{- end -}}
{{- if .Values.workers.enabled -}}
{{- range $index, $worker := .Values.workers.deployments -}}
{{- $pool := get ($config.pools | default dict) $worker.pool -}}
{{- if not $pool -}}
{{- fail (printf "workers.deployments[%d].pool: %q is not a pool in config.pools" $index $worker.pool) -}}
{{- end -}}
{{- if not (get $pool "selector") -}}
{{- fail (printf "workers.deployments[%d]: pool %q lists static endpoints; workers need a pool with a selector and target_port" $index $worker.pool) -}}
{{- end -}}
{{- if ne (get $pool "namespace") $.Release.Namespace -}}
{{- fail (printf "workers.deployments[%d]: pool %q selects pods in namespace %q, but the chart's workers run in %q" $index $worker.pool (get $pool "namespace") $.Release.Namespace) -}}
{{- end -}}
{{- if not (include "tokenlabs.poolModels" (list $config $worker.pool)) -}}
{{- fail (printf "workers.deployments[%d]: no model in config.models uses pool %q, so the worker would serve nothing" $index $worker.pool) -}}
{{- end -}}
{{- if eq $worker.engine "vllm" -}}
{{- $_ := required (printf "workers.deployments[%d].model: a vllm worker needs the model to load (a Hugging Face id or a path)" $index) $worker.model -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
