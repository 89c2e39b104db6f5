{{/*
Ingress, HTTPRoute, ServiceMonitor and NetworkPolicy of one component.
Call with (dict "root" $ "component" "mlflow" "values" .Values.mlflow "ingress" .Values.mlflow.ingress "suffix" "" "port" 5000).
*/}}
{{- define "labstack.ingress" -}}
{{- $ing := .ingress -}}
{{- if $ing.enabled }}
{{- $name := include "labstack.component.fullname" (list .root .component) }}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {{ printf "%s%s" $name .suffix }}
  labels:
    {{- include "labstack.labels" (list .root .component) | nindent 4 }}
  {{- with $ing.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- with $ing.className }}
  ingressClassName: {{ . }}
  {{- end }}
  {{- if $ing.tls.enabled }}
  tls:
    - hosts: [{{ $ing.host | quote }}]
      secretName: {{ $ing.tls.secretName }}
  {{- end }}
  rules:
    - host: {{ $ing.host | quote }}
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: {{ $name }}
                port:
                  number: {{ .port }}
{{- end }}
{{- end -}}

{{- define "labstack.httpRoute" -}}
{{- $r := .values.httpRoute -}}
{{- if $r.enabled }}
{{- $name := include "labstack.component.fullname" (list .root .component) }}
---
# TLS terminates at the Gateway listener named by parentRefs[].sectionName.
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: {{ $name }}
  labels:
    {{- include "labstack.labels" (list .root .component) | nindent 4 }}
spec:
  parentRefs:
    {{- toYaml $r.parentRefs | nindent 4 }}
  {{- with $r.hostnames }}
  hostnames:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  rules:
    - matches:
        - path:
            type: PathPrefix
            value: /
      backendRefs:
        - name: {{ $name }}
          port: {{ .port }}
{{- end }}
{{- end -}}

{{- define "labstack.serviceMonitor" -}}
{{- $m := .values.serviceMonitor -}}
{{- if $m.enabled }}
{{- $name := include "labstack.component.fullname" (list .root .component) }}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ $name }}
  labels:
    {{- include "labstack.labels" (list .root .component) | nindent 4 }}
    {{- with $m.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "labstack.selectorLabels" (list .root .component) | nindent 6 }}
      labstack.io/service: main
  endpoints:
    - port: {{ .portName }}
      path: {{ .path }}
      interval: {{ $m.interval }}
{{- end }}
{{- end -}}

{{/* Call with (dict "root" $ "component" "mlflow" "ports" (list 5000) "public" true). */}}
{{- define "labstack.networkPolicy" -}}
{{- if .root.Values.networkPolicy.enabled }}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "labstack.component.fullname" (list .root .component) }}
  labels:
    {{- include "labstack.labels" (list .root .component) | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "labstack.selectorLabels" (list .root .component) | nindent 6 }}
  policyTypes: [Ingress, Egress]
  {{- if not .ports }}
  ingress: []
  {{- else }}
  ingress:
    - from:
        - podSelector:
            matchLabels:
              app.kubernetes.io/instance: {{ .root.Release.Name }}
        {{- if .public }}
        {{- with .root.Values.networkPolicy.extraIngressFrom }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- end }}
      ports:
        {{- range .ports }}
        - port: {{ . }}
          protocol: TCP
        {{- end }}
  {{- end }}
  egress:
    - to:
        - podSelector:
            matchLabels:
              app.kubernetes.io/instance: {{ .root.Release.Name }}
        {{- with .root.Values.networkPolicy.extraEgressTo }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    - ports:
        - port: 53
          protocol: UDP
        - port: 53
          protocol: TCP
{{- end }}
{{- end -}}

{{/* A PVC spec body shared by volumeClaimTemplates. Call with a persistence dict. */}}
{{- define "labstack.pvcSpec" -}}
accessModes:
  {{- toYaml (.accessModes | default (list "ReadWriteOnce")) | nindent 2 }}
{{- with .storageClass }}
storageClassName: {{ . }}
{{- end }}
resources:
  requests:
    storage: {{ .size }}
{{- end -}}
