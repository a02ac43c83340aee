import { test, expect, signIn } from "../fixtures";

// The system page, reached from the navigation as an administrator would, shows which
// shellgate runs and what it is doing, and stays within the screen on a phone.
for (const width of [390, 1280]) {
  test(`the system page at ${width} px`, async ({ page, sg }) => {
    await page.setViewportSize({ width, height: 900 });
    await signIn(page, sg);
    const nav = page.getByRole("navigation", { name: "Main navigation" });
    await nav.getByRole("link", { name: "System" }).click();
    await expect(page).toHaveURL(/\/admin\/system$/);
    await expect(page.getByRole("heading", { name: "This shellgate" })).toBeVisible();
    await expect(page.getByTestId("version")).not.toBeEmpty();
    await expect(page.getByTestId("master-key-id")).toHaveText(/^[0-9a-f]{8}$/);
    await expect(page.getByTestId("system-facts")).toContainText("SQLite 3.");
    await expect(page.getByTestId("replicas").locator("tbody tr")).toHaveCount(1);
    await expect(page.getByTestId("deploy-queue")).toContainText("pending");
    // Nothing but the replicas table (which scrolls inside its panel) is wider than the screen.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow).toBeLessThanOrEqual(0);
  });
}
