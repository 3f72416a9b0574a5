import RapportCore
import SupportService

await ServiceMain.run("support") { settings, logger in try SupportApp.build(settings: settings, logger: logger) }
