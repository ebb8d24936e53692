"""UNet++ Studio core library."""
