import OrderService
import RapportCore

await ServiceMain.run("order") { settings, logger in try OrderApp.build(settings: settings, logger: logger) }
