"""What operators run beside the pipeline: alert rules, daily reports, backups and restore,
hand intervention on tasks, the message-pusher importer and the `listen` client.

Imported as `messagepusher.operations` (pyproject's `package-dir`). Sits beside
`messagepusher.actors` (either may import the other's modules); never imports `messagepusher.http`.
"""
