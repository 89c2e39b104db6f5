{{- define "training-job.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "training-job.labels" -}}
app.kubernetes.io/name: {{ default .Chart.Name .Values.nameOverride }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/component: training
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: labstack
{{- with .Values.run.id }}
labstack.io/mlflow-run-id: {{ . | quote }}
{{- end }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "training-job.image" -}}
{{- $img := .Values.image -}}
{{- $registry := $img.registry | default .Values.global.imageRegistry -}}
{{- $ref := $img.repository -}}
{{- if $registry -}}{{- $ref = printf "%s/%s" $registry $ref -}}{{- end -}}
{{- if $img.tag -}}{{- $ref = printf "%s:%s" $ref $img.tag -}}{{- end -}}
{{- if $img.digest -}}{{- $ref = printf "%s@%s" $ref $img.digest -}}{{- end -}}
{{- $ref -}}
{{- end -}}

{{- define "training-job.validate" -}}
{{- $bao := .Values.openbao -}}
{{- $secrets := .Values.secrets -}}
{{- if $bao.address -}}
{{- /* Credentials from OpenBao: the static Secrets would be a second source. */ -}}
{{- $static := list -}}
{{- if $secrets.mlflow }}{{ $static = append $static "secrets.mlflow" }}{{ end -}}
{{- if $secrets.s3 }}{{ $static = append $static "secrets.s3" }}{{ end -}}
{{- with $static -}}
{{- fail (printf "\nopenbao.address and %s are both set: the job's credentials come from OpenBao or from Secrets, one or the other (secrets.extra may stay)" (join " and " .)) -}}
{{- end -}}
{{- if not $bao.role -}}
{{- fail "\nopenbao.role must be set with openbao.address: the OpenBao kubernetes-auth role the pod logs in as" -}}
{{- end -}}
{{- if not .Values.serviceAccountName -}}
{{- fail "\nserviceAccountName must be set with openbao.address: the ServiceAccount that openbao.role is bound to" -}}
{{- end -}}
{{- if not .Values.lab.mlflowUri -}}
{{- fail "\nlab.mlflowUri must be set with openbao.address: MLFLOW_TRACKING_URI (OpenBao holds the MLflow credentials, not its address)" -}}
{{- end -}}
{{- else -}}
{{- if not $secrets.mlflow -}}
{{- fail "\nsecrets.mlflow must be set: name of the Secret with MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or set openbao.address to get them from OpenBao)" -}}
{{- end -}}
{{- if not $secrets.s3 -}}
{{- fail "\nsecrets.s3 must be set: name of the Secret with MLFLOW_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or set openbao.address to get them from OpenBao)" -}}
{{- end -}}
{{- end -}}
{{- $pfp := .Values.podFailurePolicy -}}
{{- range $pfp.ignoreExitCodes -}}
{{- if has . $pfp.failJobExitCodes -}}
{{- fail (printf "\nexit code %v is in both podFailurePolicy.ignoreExitCodes and podFailurePolicy.failJobExitCodes: a code is retried or fails the Job, not both" .) -}}
{{- end -}}
{{- end -}}
{{- if not .Values.run.id -}}
{{- fail "\nrun.id must be set: `labstack submit` creates the MLflow run before the Job and passes its id" -}}
{{- end -}}
{{- if gt (int .Values.maxFailedIndexes) (int .Values.nodes) -}}
{{- fail (printf "\nmaxFailedIndexes is %d but nodes is %d: it cannot exceed the number of indexes" (int .Values.maxFailedIndexes) (int .Values.nodes)) -}}
{{- end -}}
{{- if and .Values.dataCache.claimName .Values.dataCache.hostPath -}}
{{- fail "\ndataCache.claimName and dataCache.hostPath are both set: the shared dataset cache is one or the other" -}}
{{- end -}}
{{- /* Names set by the chart itself, or secret (they come from a Secret or OpenBao). */ -}}
{{- $reserved := list "MLFLOW_RUN_ID" "NODE_RANK" "NNODES" "NPROC_PER_NODE" "HOME" "AWS_SECRET_ACCESS_KEY" "MLFLOW_TRACKING_PASSWORD" "BAO_TOKEN" "BAO_SECRET_ID" -}}
{{- /* Names the chart sets from openbao.* and lab.*: the value to set instead. */ -}}
{{- $owned := dict "BAO_ADDR" "openbao.address" "BAO_K8S_ROLE" "openbao.role" "BAO_K8S_MOUNT" "openbao.authMount" "BAO_K8S_JWT_PATH" "openbao.address" "BAO_SECRET_PATH" "openbao.secretPath" -}}
{{- $_ := merge $owned (dict "MLFLOW_TRACKING_URI" "lab.mlflowUri" "S3_ENDPOINT" "lab.s3Endpoint" "MLFLOW_S3_ENDPOINT_URL" "lab.s3Endpoint") -}}
{{- $_ = merge $owned (dict "BAO_CACERT" "lab.caConfigMap" "REQUESTS_CA_BUNDLE" "lab.caConfigMap" "AWS_CA_BUNDLE" "lab.caConfigMap") -}}
{{- range $k, $_ := .Values.env -}}
{{- if has $k $reserved -}}
{{- fail (printf "\nenv.%s is set by the chart or comes from a Secret: remove it from env" $k) -}}
{{- else if hasKey $owned $k -}}
{{- fail (printf "\nenv.%s is set by the chart from %s: set that instead of env.%s" $k (get $owned $k) $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}
