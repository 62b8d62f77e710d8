variable "name_prefix" {
  description = "Prefix of every name"
  type        = string
}

variable "vpc_id" {
  description = "VPC of the groups"
  type        = string
}

variable "allowed_cidrs" {
  description = "CIDRs that may reach the API (8000) and the ISO 8583 host (8583)"
  type        = list(string)
}
