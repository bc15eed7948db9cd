/** Alert settings for tests that run the alert rules themselves, without a payrail to load them from its settings. */
import { alertSettings, type AlertSettings } from '../../src/alerts/index.ts';
import { ALL_HANDLED_TASKS } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { offlineProcessEnv } from './process-env.ts';

/**
 * Every threshold at its default, as a payrail with no ALERT_* setting and every task handled has them. Only the
 * ALERT_* settings shape them, so the database and chain the configuration names do not matter.
 */
export function defaultAlertSettings(databaseUrl: string): AlertSettings {
  return alertSettings(loadConfig(offlineProcessEnv(databaseUrl)), ALL_HANDLED_TASKS);
}
