output "fargate_security_group_id" {
  value = aws_security_group.fargate.id
}

output "rds_security_group_id" {
  value = aws_security_group.rds.id
}
