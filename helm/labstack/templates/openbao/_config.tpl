{{- define "labstack.openbao.config" -}}
{{- $b := .b -}}
ui = {{ $b.ui }}
# No disable_mlock: OpenBao 2.7 has no mlock (and warns of the field); the
# restricted pod security standard gives no IPC_LOCK capability anyway.
api_addr = "{{ .scheme }}://{{ .fqdn }}:{{ $b.service.port }}"
cluster_addr = "https://{{ .fqdn }}:8201"

listener "tcp" {
  address         = "[::]:{{ $b.service.port }}"
  cluster_address = "[::]:8201"
  {{- if $b.tls.enabled }}
  tls_cert_file   = "/openbao/tls/tls.crt"
  tls_key_file    = "/openbao/tls/tls.key"
  {{- else }}
  tls_disable     = true
  {{- end }}
  {{- if $b.serviceMonitor.enabled }}
  telemetry {
    unauthenticated_metrics_access = true
  }
  {{- end }}
}

storage "raft" {
  path    = "/openbao/data"
  node_id = "openbao-0"
}

telemetry {
  prometheus_retention_time = "30s"
  disable_hostname          = true
}
{{- with $b.extraConfig }}

{{ . }}
{{- end }}
{{- end -}}
