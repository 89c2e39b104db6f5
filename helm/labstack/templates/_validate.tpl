{{/*
Contradictory or incomplete values fail here, before anything is rendered,
with a message naming the value at fault.
*/}}
{{- define "labstack.validate" -}}
{{- $v := .Values -}}
{{- $req := "labstack.required" -}}

{{- /* MinIO */ -}}
{{- if $v.minio.enabled -}}
{{- include $req (list $v.minio.auth.existingSecret "minio.auth.existingSecret" "name of the Secret holding the MinIO root credentials (keys minio.auth.rootUserKey and minio.auth.rootPasswordKey)") -}}
{{- if and (eq $v.minio.mode "standalone") (ne (int $v.minio.replicas) 1) -}}
{{- fail (printf "\nminio.replicas is %d but minio.mode is standalone: standalone MinIO runs exactly 1 replica (use minio.mode=distributed for more)" (int $v.minio.replicas)) -}}
{{- end -}}
{{- if eq $v.minio.mode "distributed" -}}
{{- if or (lt (int $v.minio.replicas) 4) (ne (mod (int $v.minio.replicas) 2) 0) -}}
{{- fail (printf "\nminio.replicas is %d but minio.mode=distributed needs an even number of replicas, at least 4" (int $v.minio.replicas)) -}}
{{- end -}}
{{- if not $v.minio.persistence.enabled -}}
{{- fail "\nminio.persistence.enabled is false but minio.mode=distributed: an erasure-coded cluster on emptyDir loses data on every reschedule" -}}
{{- end -}}
{{- end -}}
{{- if $v.minio.provisioning.enabled -}}
{{- $policyNames := list "readwrite" "readonly" "writeonly" "diagnostics" "consoleAdmin" -}}
{{- range $v.minio.provisioning.policies }}{{ $policyNames = append $policyNames .name }}{{ end -}}
{{- range $i, $u := $v.minio.provisioning.users -}}
{{- include $req (list $u.existingSecret (printf "minio.provisioning.users[%d].existingSecret" $i) "name of the Secret holding this user's access and secret keys") -}}
{{- range $u.policies -}}
{{- if not (has . $policyNames) -}}
{{- fail (printf "\nminio.provisioning.users[%d].policies names policy %q, which is neither in minio.provisioning.policies nor a MinIO built-in policy" $i .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $v.mlflow.enabled -}}
{{- $buckets := list -}}
{{- range $v.minio.provisioning.buckets }}{{ $buckets = append $buckets .name }}{{ end -}}
{{- if not (has $v.mlflow.artifacts.bucket $buckets) -}}
{{- fail (printf "\nmlflow.artifacts.bucket is %q but minio.provisioning.buckets does not create it" $v.mlflow.artifacts.bucket) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* PostgreSQL */ -}}
{{- if $v.postgresql.enabled -}}
{{- include $req (list $v.postgresql.auth.existingSecret "postgresql.auth.existingSecret" "name of the Secret holding the PostgreSQL passwords (keys postgresql.auth.postgresPasswordKey and postgresql.auth.passwordKey)") -}}
{{- end -}}

{{- /* MLflow */ -}}
{{- if $v.mlflow.enabled -}}
{{- include $req (list $v.mlflow.artifacts.existingSecret "mlflow.artifacts.existingSecret" "name of the Secret holding MLflow's S3 access key pair") -}}
{{- if and $v.minio.enabled $v.mlflow.artifacts.externalEndpoint -}}
{{- fail "\nmlflow.artifacts.externalEndpoint is set but minio.enabled is true: use the bundled MinIO or an external endpoint, not both" -}}
{{- end -}}
{{- if and (not $v.minio.enabled) (not $v.mlflow.artifacts.externalEndpoint) -}}
{{- fail "\nmlflow.artifacts.externalEndpoint must be set when minio.enabled is false: MLflow needs an S3 endpoint for its artifacts" -}}
{{- end -}}
{{- if $v.postgresql.enabled -}}
{{- if $v.mlflow.backendStore.external.host -}}
{{- fail "\nmlflow.backendStore.external.host is set but postgresql.enabled is true: use the bundled PostgreSQL or an external one, not both" -}}
{{- end -}}
{{- range (list $v.mlflow.backendStore.database $v.mlflow.backendStore.authDatabase) -}}
{{- if not (has . $v.postgresql.databases) -}}
{{- fail (printf "\nmlflow.backendStore uses database %q but postgresql.databases does not create it" .) -}}
{{- end -}}
{{- end -}}
{{- else -}}
{{- include $req (list $v.mlflow.backendStore.external.host "mlflow.backendStore.external.host" "postgresql.enabled is false, so MLflow needs an external PostgreSQL host") -}}
{{- include $req (list $v.mlflow.backendStore.external.existingSecret "mlflow.backendStore.external.existingSecret" "name of the Secret holding the external PostgreSQL password") -}}
{{- end -}}
{{- if $v.mlflow.auth.enabled -}}
{{- include $req (list $v.mlflow.auth.existingSecret "mlflow.auth.existingSecret" "mlflow.auth.enabled is true, so the Secret holding the MLflow admin username and password must be named") -}}
{{- else -}}
{{- if $v.mlflow.auth.existingSecret -}}
{{- fail "\nmlflow.auth.existingSecret is set but mlflow.auth.enabled is false: contradictory auth settings (enable auth or drop the Secret)" -}}
{{- end -}}
{{- if or $v.mlflow.ingress.enabled $v.mlflow.httpRoute.enabled -}}
{{- fail "\nmlflow.auth.enabled is false but mlflow.ingress/httpRoute exposes MLflow: an unauthenticated tracking server must stay inside the cluster" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* OpenBao */ -}}
{{- if $v.openbao.enabled -}}
{{- if and $v.openbao.tls.enabled (not $v.openbao.tls.existingSecret) -}}
{{- fail "\nopenbao.tls.existingSecret must be set when openbao.tls.enabled is true: name a kubernetes.io/tls Secret" -}}
{{- end -}}
{{- if and (not $v.openbao.tls.enabled) $v.openbao.tls.existingSecret -}}
{{- fail "\nopenbao.tls.existingSecret is set but openbao.tls.enabled is false: contradictory TLS settings" -}}
{{- end -}}
{{- end -}}

{{- /* Exposure of every component */ -}}
{{- range $c := list "minio" "mlflow" "openbao" -}}
{{- $cv := index $v $c -}}
{{- $ings := dict "ingress" $cv.ingress -}}
{{- if hasKey $cv "consoleIngress" }}{{ $_ := set $ings "consoleIngress" $cv.consoleIngress }}{{ end -}}
{{- range $k, $ing := $ings -}}
{{- if $ing.enabled -}}
{{- include $req (list $ing.host (printf "%s.%s.host" $c $k) "an enabled Ingress needs a host") -}}
{{- if and $ing.tls.enabled (not $ing.tls.secretName) -}}
{{- fail (printf "\n%s.%s.tls.secretName must be set when %s.%s.tls.enabled is true" $c $k $c $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $cv.httpRoute.enabled (not $cv.httpRoute.parentRefs) -}}
{{- fail (printf "\n%s.httpRoute.parentRefs must name at least one Gateway when %s.httpRoute.enabled is true" $c $c) -}}
{{- end -}}
{{- end -}}
{{- end -}}
