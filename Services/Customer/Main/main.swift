import CustomerService
import RapportCore

await ServiceMain.run("customer") { settings, logger in try CustomerApp.build(settings: settings, logger: logger) }
