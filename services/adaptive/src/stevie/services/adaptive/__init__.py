"""adaptive: regime by BOCPD, feature gating by IC / HSIC / drift, the alpha registry and attribution."""
