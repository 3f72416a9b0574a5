import GatewayService
import RapportCore

await ServiceMain.run("gateway") { settings, logger in try GatewayApp.build(settings: settings, logger: logger) }
