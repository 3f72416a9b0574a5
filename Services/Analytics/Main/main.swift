import AnalyticsService
import RapportCore

await ServiceMain.run("analytics") { settings, logger in try AnalyticsApp.build(settings: settings, logger: logger) }
