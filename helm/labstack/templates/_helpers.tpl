{{/* Names ------------------------------------------------------------------ */}}
{{- define "labstack.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "labstack.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<component>", e.g. lab-labstack-mlflow. Call with (list $ "mlflow"). */}}
{{- define "labstack.component.fullname" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "labstack.fullname" $root) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels ----------------------------------------------------------------- */}}
{{- define "labstack.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "labstack.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "labstack.labels" -}}
{{- $root := index . 0 -}}
{{ include "labstack.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: labstack
{{- with $root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Images: [global.imageRegistry/]repository[:tag][@digest]. Call with (list $ .Values.mlflow.image). */}}
{{- define "labstack.image" -}}
{{- $root := index . 0 -}}
{{- $img := index . 1 -}}
{{- $registry := $img.registry | default $root.Values.global.imageRegistry -}}
{{- $ref := $img.repository -}}
{{- if $registry -}}{{- $ref = printf "%s/%s" $registry $ref -}}{{- end -}}
{{- if $img.tag -}}{{- $ref = printf "%s:%s" $ref $img.tag -}}{{- end -}}
{{- if $img.digest -}}{{- $ref = printf "%s@%s" $ref $img.digest -}}{{- end -}}
{{- $ref -}}
{{- end -}}

{{- define "labstack.imagePullSecrets" -}}
{{- with .Values.global.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Restricted pod security (Pod Security Standard "restricted"). ---------- */}}
{{- define "labstack.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "labstack.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Pod scheduling knobs of a component. Call with a component's values. */}}
{{- define "labstack.scheduling" -}}
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

{{/* A required value: fail naming it. Call with (list VALUE "path.in.values" "why"). */}}
{{- define "labstack.required" -}}
{{- if not (index . 0) -}}
{{- fail (printf "\n%s must be set: %s" (index . 1) (index . 2)) -}}
{{- end -}}
{{- end -}}

{{/* Service endpoints inside the cluster ----------------------------------- */}}
{{- define "labstack.minio.endpoint" -}}
{{- if .Values.minio.enabled -}}
http://{{ include "labstack.component.fullname" (list . "minio") }}:{{ .Values.minio.service.apiPort }}
{{- else -}}
{{- .Values.mlflow.artifacts.externalEndpoint -}}
{{- end -}}
{{- end -}}

{{- define "labstack.postgresql.host" -}}
{{- if .Values.postgresql.enabled -}}
{{- include "labstack.component.fullname" (list . "postgresql") -}}
{{- else -}}
{{- .Values.mlflow.backendStore.external.host -}}
{{- end -}}
{{- end -}}

{{- define "labstack.mlflow.url" -}}
http://{{ include "labstack.component.fullname" (list . "mlflow") }}:{{ .Values.mlflow.service.port }}
{{- end -}}
