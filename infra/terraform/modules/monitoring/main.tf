# CloudWatch log groups of the tasks (/ecs/<prefix>/app, worker, migration, host) and an alarm on
# the API's CPU.

resource "aws_cloudwatch_log_group" "task" {
  #checkov:skip=CKV_AWS_338:30 days of logs by default (a variable); a year of simulator logs is not worth its price
  #checkov:skip=CKV_AWS_158:encrypted by CloudWatch's own key; the product's logs hold no PIN, PIN block or full card number
  for_each          = toset(["app", "worker", "migration", "host"])
  name              = "/ecs/${var.name_prefix}/${each.key}"
  retention_in_days = var.retention_in_days
}

resource "aws_cloudwatch_metric_alarm" "app_cpu" {
  alarm_name          = "${var.name_prefix}-app-cpu-high"
  alarm_description   = "The API's tasks use more than 80 % CPU for 10 minutes"
  namespace           = "AWS/ECS"
  metric_name         = "CPUUtilization"
  dimensions          = { ClusterName = var.cluster_name, ServiceName = var.app_service_name }
  statistic           = "Average"
  period              = 300
  evaluation_periods  = 2
  threshold           = 80
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
}
