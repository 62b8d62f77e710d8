variable "name_prefix" {
  description = "Repository name, e.g. atm-simulator-dev"
  type        = string
}

variable "force_delete" {
  description = "Let terraform destroy remove a repository that still holds images"
  type        = bool
  default     = true
}
