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
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: training
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: labstack
{{- with .Values.run.id }}
labstack.io/mlflow-run-id: {{ . }}
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
{{- if not .Values.secrets.mlflow -}}
{{- fail "\nsecrets.mlflow must be set: name of the Secret with MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" -}}
{{- end -}}
{{- if not .Values.secrets.s3 -}}
{{- fail "\nsecrets.s3 must be set: name of the Secret with MLFLOW_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" -}}
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
{{- range $k, $_ := .Values.env -}}
{{- if has $k (list "MLFLOW_RUN_ID" "NODE_RANK" "NNODES" "NPROC_PER_NODE" "HOME" "AWS_SECRET_ACCESS_KEY" "MLFLOW_TRACKING_PASSWORD") -}}
{{- fail (printf "\nenv.%s is set by the chart or comes from a Secret: remove it from env" $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}
