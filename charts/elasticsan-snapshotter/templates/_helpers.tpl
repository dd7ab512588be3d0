{{/* Chart name, truncated to a DNS label. */}}
{{- define "ess.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: the release name when it already contains the chart name, else release-chart. */}}
{{- define "ess.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "ess.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ess.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ess.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ess.labels" -}}
{{ include "ess.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: elasticsan-snapshotter
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "ess.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ess.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ess.peeringName" -}}
{{- default (include "ess.fullname" .) .Values.peering.name -}}
{{- end -}}

{{/* ARM endpoint and Entra authority of the configured cloud, unless given explicitly. */}}
{{- define "ess.armEndpoint" -}}
{{- if .Values.azure.armEndpoint -}}
{{- .Values.azure.armEndpoint -}}
{{- else if eq .Values.azure.cloud "AzureUSGovernment" -}}
https://management.usgovcloudapi.net/
{{- else if eq .Values.azure.cloud "AzureChinaCloud" -}}
https://management.chinacloudapi.cn/
{{- else -}}
https://management.azure.com/
{{- end -}}
{{- end -}}

{{- define "ess.authorityHost" -}}
{{- if .Values.azure.authorityHost -}}
{{- .Values.azure.authorityHost -}}
{{- else if eq .Values.azure.cloud "AzureUSGovernment" -}}
https://login.microsoftonline.us/
{{- else if eq .Values.azure.cloud "AzureChinaCloud" -}}
https://login.chinacloudapi.cn/
{{- end -}}
{{- end -}}

{{/* The freeze agent's objects: DaemonSet, ServiceAccount, certificates. */}}
{{- define "ess.freezeAgentName" -}}
{{- printf "%s-freeze-agent" (include "ess.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ess.freezeAgentSelectorLabels" -}}
{{ include "ess.selectorLabels" . }}
app.kubernetes.io/component: freeze-agent
{{- end -}}

{{/* The same labels as a label selector: how the operator finds the agent pods. */}}
{{- define "ess.freezeAgentSelector" -}}
{{- printf "app.kubernetes.io/name=%s,app.kubernetes.io/instance=%s,app.kubernetes.io/component=freeze-agent" (include "ess.name" .) .Release.Name -}}
{{- end -}}

{{/* Secret holding the agent's serving certificate (tls.crt, tls.key) and the CA of its clients (ca.crt). */}}
{{- define "ess.freezeAgentTlsSecret" -}}
{{- printf "%s-freeze-agent-tls" (include "ess.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Secret holding the operator's client certificate for the agents, and the agents' CA. */}}
{{- define "ess.freezeClientTlsSecret" -}}
{{- printf "%s-freeze-client-tls" (include "ess.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
