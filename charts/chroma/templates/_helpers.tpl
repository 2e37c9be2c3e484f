{{/* Names and labels shared by every template of the chart. */}}

{{- define "chroma.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name: the release name, plus the chart name unless it holds it. */}}
{{- define "chroma.fullname" -}}
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

{{/* Deployment, Service, ClusterRole and (Cluster)RoleBinding of the operator. */}}
{{- define "chroma.operatorName" -}}
{{- printf "%s-operator" (include "chroma.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "chroma.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "chroma.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "chroma.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "chroma.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Labels of every object the chart makes (component added by each template). */}}
{{- define "chroma.labels" -}}
helm.sh/chart: {{ include "chroma.chart" . }}
app.kubernetes.io/name: {{ include "chroma.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ default .Chart.AppVersion .Values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: chroma
{{- end -}}

{{/* Selector of the operator's pods: never changes for a release. */}}
{{- define "chroma.operatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "chroma.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "chroma.operatorLabels" -}}
{{ include "chroma.labels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* The operator's command line: every namespace, or the listed ones. */}}
{{- define "chroma.operatorArgs" -}}
{{- if .Values.operator.watchNamespaces }}
{{- range .Values.operator.watchNamespaces }}
- --namespace={{ . }}
{{- end }}
{{- else }}
- --all-namespaces
{{- end }}
- --liveness=http://0.0.0.0:{{ .Values.operator.healthPort }}/healthz
{{- if .Values.operator.verbose }}
- --verbose
{{- end }}
{{- end -}}
