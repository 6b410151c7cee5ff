"""The shell every page sits in: a sidebar on wide screens, a top bar with a menu drawer on phones.

A page is added to :data:`NAVIGATION` when it exists, not before: the dashboard never shows a link to a
page whose API is missing. The shell shows a page's content only once :class:`SessionState` has confirmed the
sign-in, so a visitor without a session sees nothing of the dashboard before being sent to /login.
"""

from __future__ import annotations

from dataclasses import dataclass

import reflex as rx

from ui_reflex import browser
from ui_reflex.session import SessionState

APP_NAME = "Switchyard"


@dataclass(frozen=True)
class NavItem:
    label: str
    route: str
    icon: str  # a lucide icon name


NAVIGATION: tuple[NavItem, ...] = (
    NavItem("Dashboard", "/", "layout-dashboard"),
    NavItem("Models", "/models", "boxes"),
    NavItem("Requests", "/requests", "list"),
    NavItem("Logs", "/logs", "scroll-text"),
    NavItem("Keys", "/keys", "key-round"),
    NavItem("Policies", "/policies", "shield-check"),
    NavItem("Attribution", "/attribution", "tags"),
    NavItem("Config", "/config", "file-cog"),
    NavItem("Endpoints", "/endpoints", "plug"),
    NavItem("Playground", "/playground", "message-square-text"),
    NavItem("Settings", "/settings", "settings"),
)


def _is_current(route: str) -> rx.Var[bool]:
    path = rx.State.router.url.path
    if route == "/":
        return (path == "/") | (path == "")
    return (path == route) | path.startswith(route + "/")


def nav_link(item: NavItem) -> rx.Component:
    current = _is_current(item.route)
    return rx.link(
        rx.hstack(
            rx.icon(item.icon, size=18),
            rx.text(item.label, size="3", weight=rx.cond(current, "medium", "regular")),
            align="center",
            spacing="3",
            padding_x="12px",
            padding_y="8px",
            border_radius="8px",
            width="100%",
            background=rx.cond(current, rx.color("accent", 4), "transparent"),
            color=rx.cond(current, rx.color("accent", 12), rx.color("gray", 11)),
            _hover={"background": rx.color("accent", 3), "color": rx.color("accent", 12)},
        ),
        href=item.route,
        underline="none",
        width="100%",
        data_nav=item.label.lower(),
    )


def brand() -> rx.Component:
    return rx.hstack(
        rx.icon("git-fork", size=22, color=rx.color("accent", 9)),
        rx.heading(APP_NAME, size="5", weight="bold"),
        align="center",
        spacing="2",
    )


def sign_out_button(**props) -> rx.Component:
    return rx.button(
        rx.icon("log-out", size=16),
        "Sign out",
        variant="ghost",
        size="2",
        on_click=browser.call(browser.SIGN_OUT),
        data_action="sign-out",
        **props,
    )


def account_footer() -> rx.Component:
    """Who is signed in, the colour mode switch and sign-out."""
    return rx.vstack(
        rx.hstack(
            rx.icon("circle-user-round", size=18, color=rx.color("gray", 10)),
            rx.text(SessionState.username, size="2", color=rx.color("gray", 11), id="signed-in-user", trim="both"),
            align="center",
            spacing="2",
            padding_x="12px",
        ),
        rx.hstack(sign_out_button(), rx.spacer(), rx.color_mode.button(size="2", variant="ghost"), width="100%"),
        spacing="2",
        width="100%",
    )


def sidebar() -> rx.Component:
    return rx.box(
        rx.vstack(
            rx.box(brand(), padding_x="12px", padding_y="8px"),
            rx.vstack(*[nav_link(item) for item in NAVIGATION], spacing="1", width="100%"),
            rx.spacer(),
            account_footer(),
            height="100%",
            spacing="5",
            padding="16px",
        ),
        display=["none", "none", "none", "block"],
        width="232px",
        min_width="232px",
        height="100vh",
        position="sticky",
        top="0",
        border_right=f"1px solid {rx.color('gray', 5)}",
        background=rx.color("gray", 2),
    )


def mobile_bar() -> rx.Component:
    return rx.hstack(
        brand(),
        rx.spacer(),
        rx.drawer.root(
            rx.drawer.trigger(
                rx.icon_button(rx.icon("menu"), variant="soft", size="2", aria_label="Open navigation", id="nav-menu")
            ),
            rx.drawer.overlay(z_index="50"),
            rx.drawer.portal(
                rx.drawer.content(
                    rx.vstack(
                        rx.hstack(
                            brand(),
                            rx.spacer(),
                            rx.drawer.close(rx.icon_button(rx.icon("x"), variant="ghost", aria_label="Close")),
                            width="100%",
                        ),
                        rx.vstack(*[rx.drawer.close(nav_link(item)) for item in NAVIGATION], spacing="1", width="100%"),
                        rx.divider(),
                        account_footer(),
                        spacing="5",
                        padding="16px",
                        width="100%",
                    ),
                    top="0",
                    left="0",
                    height="100%",
                    overflow_y="auto",
                    width="min(280px, 85vw)",
                    background=rx.color("gray", 2),
                    z_index="60",
                ),
            ),
            direction="left",
        ),
        display=["flex", "flex", "flex", "none"],
        align="center",
        padding_x="16px",
        padding_y="10px",
        border_bottom=f"1px solid {rx.color('gray', 5)}",
        background=rx.color("gray", 2),
        position="sticky",
        top="0",
        z_index="10",
        width="100%",
    )


def page_shell(title: str, *children: rx.Component, actions: rx.Component | None = None) -> rx.Component:
    """A page: the navigation, a heading with optional actions on its right, then the page's content.

    Nothing is shown until the sign-in is confirmed (``SessionState.require`` runs first on every page).
    """
    return rx.cond(SessionState.checked, _shell(title, *children, actions=actions), _waiting())


def _waiting() -> rx.Component:
    return rx.center(rx.spinner(size="3"), height="100vh", width="100%")


def _shell(title: str, *children: rx.Component, actions: rx.Component | None = None) -> rx.Component:
    return rx.flex(
        sidebar(),
        rx.box(
            mobile_bar(),
            rx.vstack(
                rx.hstack(
                    rx.heading(title, size="7"),
                    rx.spacer(),
                    actions if actions is not None else rx.fragment(),
                    width="100%",
                    align="center",
                    wrap="wrap",
                    spacing="3",
                ),
                *children,
                spacing="5",
                padding=["16px", "16px", "24px", "32px"],
                width="100%",
                max_width="1280px",
            ),
            flex="1",
            min_width="0",
        ),
        width="100%",
        min_height="100vh",
    )
