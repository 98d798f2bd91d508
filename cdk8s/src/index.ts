// The toolkit's public surface: presets, their validation, the tuning functions and synthesis.
export { presets, minimal, standard, premium, PRESET_NAMES, isPresetName } from './presets.js';
export type { Preset, PresetName, MonitoringSettings, NodePool, Resources, ResourceAmounts, AppTier, WorkerTier, RedisTier, PgBouncerTier, PostgresTier } from './presets.js';
export { resolvePreset, validatePreset, mergeOverrides, peakPods, peakClientConnections, PresetValidationError } from './validate.js';
export type { PresetOverrides, ValidationIssue } from './validate.js';
export * from './tuning/index.js';
export { synthManifests, synthPreset, checkManifests, DEFAULT_IMAGE, DEFAULT_NAMESPACE } from './synth.js';
export type { Manifest, SynthOptions } from './synth.js';
export { toYaml } from './yaml.js';
export { WaRouterChart } from './charts/wa-router-chart.js';
export { alertGroups, RUNBOOK_BASE, SCRAPE_JOBS } from './monitoring/rules.js';
export type { AlertRule, RuleGroup } from './monitoring/rules.js';
export { dashboardRows, grafanaDashboard } from './monitoring/dashboard.js';
export type { Panel, PanelRow, PanelQuery } from './monitoring/dashboard.js';
export { monitoringFiles } from './charts-files.js';
export { operatorManifests, OPERATOR_NAMESPACE, OPERATOR_NAME, OPERATOR_RULES } from './operator/install.js';
export { whatsAppRouterCrd, overridesSchema, API_VERSION as OPERATOR_API_VERSION, KIND as OPERATOR_KIND, PLURAL as OPERATOR_PLURAL } from './operator/crd.js';
export { applySetId, applySetIdOf, groupKind, groupKindsValue, APPLYSET_ID_LABEL, GROUP_KINDS_ANNOTATION, PART_OF_LABEL, TOOLING as OPERATOR_TOOLING, TOOLING_ANNOTATION } from './operator/render.js';
export { FIELD_MANAGER as OPERATOR_FIELD_MANAGER } from './operator/controller.js';
