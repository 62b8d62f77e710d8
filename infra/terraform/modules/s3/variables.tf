variable "bucket_name" {
  description = "Globally unique bucket name"
  type        = string
}

variable "force_destroy" {
  description = "Let terraform destroy empty the bucket"
  type        = bool
  default     = false
}
